"""medmae.training"""
