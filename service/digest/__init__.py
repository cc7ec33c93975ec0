"""People insights: the directory, tips, daily digests, top collaborators, meeting dashboards and API."""
