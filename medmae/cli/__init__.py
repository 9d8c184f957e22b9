"""medmae.cli"""
