"""The job queue on Redis Streams: the protocol both ends speak, the API instance's broker
(admission, replies, surviving a Redis loss) and the batching worker with its health server.
It raises queue errors (:mod:`service.queue.errors`) and knows nothing of HTTP."""
