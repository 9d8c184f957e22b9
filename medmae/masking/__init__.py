"""medmae.masking"""
