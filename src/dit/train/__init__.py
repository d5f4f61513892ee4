"""dit.train"""
