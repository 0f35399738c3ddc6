"""An independent model of the contract, in plain Python, to check the service against: the
chaos run's `Reference` (contract.py) and the property tests' replay share its rules.

It is an oracle: written from the contract (docs/contract.md), it imports nothing from service/, so
a mistake in the service's rules cannot hide in it too.
"""
