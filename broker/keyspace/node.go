package keyspace

// Fleet-area keys of the operations console (bot-independent, under the
// prefix P):
//
//	P:node:<id>:status     string  a node's status snapshot (JSON, short TTL)
//	P:node:<id>:commands   list    admin actions forwarded to the node (JSON)
//	P:node:index           zset    node id -> unix ms of its last snapshot

// NodeStatus is the status snapshot of node id.
func (k Keys) NodeStatus(id string) string { return k.Prefix() + ":node:" + id + ":status" }

// NodeCommands is the list of admin actions forwarded to node id.
func (k Keys) NodeCommands(id string) string { return k.Prefix() + ":node:" + id + ":commands" }

// NodeIndex is the sorted set of nodes by the time of their last snapshot.
func (k Keys) NodeIndex() string { return k.Prefix() + ":node:index" }
