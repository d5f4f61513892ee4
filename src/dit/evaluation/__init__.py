"""dit.evaluation"""
