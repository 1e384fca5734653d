"""Tasks: what is measured for a job. Worker-side halves run on a Runner;
driver-side halves (the largest-batch search) only see answers."""

TASKS = ("throughput", "max_batch_size", "accuracy")


def normalize_task(name: str) -> str:
    """Accept the CLI's spelling (max-batch-size) and the record's (max_batch_size)."""
    return name.strip().replace("-", "_")
