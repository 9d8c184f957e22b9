"""medmae.models"""
