"""medmae.export"""
