"""Running a sweep: options, the plan, the worker and its protocol, executors, the driver."""
