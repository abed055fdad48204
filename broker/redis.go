package broker

import "github.com/redis/rueidis"

type rueidisCompleted = rueidis.Completed

func isBusyGroup(err error) bool { return rueidis.IsRedisBusyGroup(err) }
