"""medmae.data"""
