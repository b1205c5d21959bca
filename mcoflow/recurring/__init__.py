"""Recurring jobs: a job run at the occurrences of a cron expression in a time zone.

- ``cron``: the occurrences (croniter), daylight-saving changes, the catch-up rule;
- ``job``: ``ScheduleRequest``, what the CLI, the web form and the API ask for (neutral:
  imports neither the actions nor the engine);
- ``service``: ``Schedules``, creating (the job checked as if started now), listing,
  pausing, resuming and deleting schedules;
- ``scheduler``: ``Scheduler``, which every executor process runs to fire occurrences;
- ``views``: a schedule and a run as the CLI, the console and the API show them.

The SQL is in ``mcoflow.engine.store.schedules``.
"""
