"""The in-memory list+watch cache that every read is served from.

Shape of client-go's ``tools/cache``: a ``Reflector`` lists and watches one
resource kind into a ``Store`` of compact projections; the store calls its
handlers on every change (the controller's work queue, the WatchReplicas
streams). ``ClusterCache`` owns one store per kind and says whether the whole
cache is synced and the apiserver reachable.
"""
