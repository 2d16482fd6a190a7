"""PyBullet Panda world, Gymnasium tasks and scripted experts."""
