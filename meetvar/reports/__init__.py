"""Reports produced after a meet from the dashboard's database (``meetvar agreement``)."""
