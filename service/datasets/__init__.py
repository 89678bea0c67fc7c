"""Image datasets in the blob store (or where they already are): archives and folders checked
and indexed once (`ingest`, `archives`), the index (`index`), sources registered in place
(`sources`), uploads (`uploads`), and ranged reads of single images through the index
(`reader`). Torch-free and HTTP-free: the API and the workers both use it."""
