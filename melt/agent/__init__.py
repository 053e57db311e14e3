"""The device side of melt: runs one case in a fresh process and writes raw results as files.

Everything under melt.agent, melt.runtimes and melt.envinfo imports only the standard library
and the one runtime a case drives, because a Jetson or a phone will not have pandas or plotly.
"""
