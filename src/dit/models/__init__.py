"""dit.models"""
