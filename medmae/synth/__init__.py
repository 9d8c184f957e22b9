"""medmae.synth"""
