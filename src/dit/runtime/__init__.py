"""dit.runtime"""
