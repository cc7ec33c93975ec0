"""People insights from stored meetings: the people directory and matching, tips, coaching suggestions,
top collaborators, meeting dashboards and the tenant's organisation; the local-day arithmetic they share."""
