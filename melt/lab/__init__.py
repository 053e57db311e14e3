"""melt as a client of a labgrid lab: places on a coordinator, reserved, acquired and released through
labgrid's own client session (labgrid.remote.client.ClientSession and the coordinator's gRPC calls).

- client.py: one labgrid client session per coordinator in this melt process, and who melt is to labgrid
- lease.py: reserve, wait, take over from a melt that is gone, acquire, resolve, release (one place)
- transport.py: a place as a melt transport (the place's NetworkService, reached with melt's SSH transport)
- pool.py: plan time: which places a profile or a sweep's `lab:` block names, checked against the coordinator

melt keeps no queue or scheduler of its own: who gets a place next is labgrid's reservation scheduler.
labgrid is an optional dependency (`pip install melt[lab]`); nothing here is imported unless a profile or
a sweep names a lab.
"""
