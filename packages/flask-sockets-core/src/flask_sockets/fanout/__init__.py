"""Fan-out: rooms, delivery, presence and brokers, in layers that import
only downward (each module imports only those above it in this list, and
``flask_sockets`` modules below the fan-out):

- :mod:`~flask_sockets.fanout.delivery`: one socket's send queue,
  back-pressure and slow consumers;
- :mod:`~flask_sockets.fanout.presence`: presence entries, their stores'
  interface, the in-process store, and this process's keeper (heartbeat,
  callbacks);
- :mod:`~flask_sockets.fanout.broker`: the broker interface and the
  in-process broker;
- :mod:`~flask_sockets.fanout.redis_common`, ``redis_presence``,
  ``redis_pubsub`` (one Redis), ``redis_cluster`` (a Redis Cluster): the
  Redis implementations; redis-py is imported only inside their functions;
- :mod:`~flask_sockets.fanout.config`: the broker an app's config asks for;
- :mod:`~flask_sockets.fanout.membership`: which sockets are in which room
  (:class:`~flask_sockets.fanout.membership.Rooms`), the top.

The modules ``flask_sockets.rooms``, ``flask_sockets.brokers``,
``flask_sockets.presence`` and ``flask_sockets.redis_broker`` re-export
their names from here. This package imports none of its modules.
"""
