"""Worker-side plumbing: Celery signal hooks and the batched event publisher (the gRPC
bridge joins here). Nothing in it touches the database."""
