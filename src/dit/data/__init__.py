"""dit.data"""
