"""medmae.tracking"""
