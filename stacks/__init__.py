"""The ringfleet Pulumi program: one spec, components chosen by provider.

`__main__.py` is what `pulumi up` runs; `program.build(spec)` is the whole
program as a function, so tests can run it under Pulumi's mocks.
"""
