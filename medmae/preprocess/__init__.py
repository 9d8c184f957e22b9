"""medmae.preprocess"""
