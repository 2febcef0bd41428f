"""The node verification suite `ringfleet verify ENV` runs with pytest and testinfra.

It ships inside the package so it runs from any checkout, against any inventory:
`pytest <this dir> --ansible-inventory inventories/<env>/hosts.yml`.
"""
