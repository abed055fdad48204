package discordtest

// Events returns, sorted, the name of every dispatch the live traffic can
// send (the keys Config.Mix accepts). Besides these, sessions get READY,
// RESUMED, GUILD_CREATE for each guild, GUILD_MEMBERS_CHUNK and RATE_LIMITED
// in answer to Request Guild Members.
func Events() []string { return knownEvents() }
