"""Session-wide test setup: every test session gets its own ROS domain on localhost only."""

import os

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
if 'DP_TT_ROS_KEEP_DOMAIN' not in os.environ:
    os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
