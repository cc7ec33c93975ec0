"""RQ entry points, queues and the scheduler."""
