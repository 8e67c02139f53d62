"""What a deployment asks for and what nodes give: profiles, quantities, instance types,
requirements and taints, NodePools, sizing and fit. No YAML, no rendering."""
