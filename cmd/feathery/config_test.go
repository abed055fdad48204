package main

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testToken = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.s3cr3t-t0ken-value-abcdefghijklmnop"

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseConfig_Minimal(t *testing.T) {
	cfg, err := parseConfig("f.yaml", []byte("bots:\n  - name: main\n    token: ${TOK}\n"), envOf(map[string]string{"TOK": testToken}))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Bots[0]
	if b.Token != testToken {
		t.Errorf("token not expanded")
	}
	if !cfg.Redis.embedded() || cfg.Redis.EmbeddedAddr != defaultEmbeddedAddr {
		t.Errorf("redis: got %+v, want embedded on %s", cfg.Redis, defaultEmbeddedAddr)
	}
	if cfg.Admin.Addr != defaultAdminAddr {
		t.Errorf("admin.addr: got %q, want %q", cfg.Admin.Addr, defaultAdminAddr)
	}
	if cfg.IdentifyWindow.D() != 5*time.Second || cfg.ShutdownTimeout.D() != 30*time.Second {
		t.Errorf("durations: got %v %v", cfg.IdentifyWindow.D(), cfg.ShutdownTimeout.D())
	}
	if b.Intents.Value != intentsUnprivileged || b.Shards != 0 || b.ShardIDs != nil || b.Compression != "zlib-stream" {
		t.Errorf("bot defaults: got %+v", b)
	}
	if b.Autoscale.CheckEvery.D() != 8*time.Hour || b.Autoscale.MaxGuildsPerShard != 2000 {
		t.Errorf("autoscale defaults with shards: auto: got %+v, want every 8h, 2000 guilds a shard", b.Autoscale)
	}
	if g := gatewayBots(cfg)[0]; g.AutoscaleEvery != 8*time.Hour || g.AutoscaleMaxGuilds != 2000 {
		t.Errorf("the gateway's bot has autoscale %v, %d: want 8h, 2000", g.AutoscaleEvery, g.AutoscaleMaxGuilds)
	}
	cfg, err = parseConfig("f.yaml", []byte("bots:\n  - name: main\n    token: ${TOK}\n    autoscale: {max_guilds_per_shard: 2500}\n"), envOf(map[string]string{"TOK": testToken}))
	if err != nil || cfg.Bots[0].Autoscale.MaxGuildsPerShard != 2500 {
		t.Errorf("autoscale.max_guilds_per_shard: 2500: got %v, %v", cfg, err)
	}
	cfg, err = parseConfig("f.yaml", []byte("bots:\n  - name: main\n    token: ${TOK}\n    shards: 4\n"), envOf(map[string]string{"TOK": testToken}))
	if err != nil || cfg.Bots[0].Autoscale != (AutoscaleConfig{}) {
		t.Errorf("a fixed shard count has no autoscale: got %+v, %v", cfg.Bots[0].Autoscale, err)
	}
}

func TestParseConfig_Values(t *testing.T) {
	doc := `
log: {level: debug, format: json}
redis: {url: "redis://:${PW}@localhost:6380/2", prefix: fx}
admin: {addr: "127.0.0.1:0", token: "${ADMIN}"}
discord: {rest_url: "http://127.0.0.1:9/api/v10"}
identify_window: 1500ms
publisher: {queue_size: 10, max_delay: 2ms}
bots:
  - name: a-bot
    token: "${TOK}"
    intents: [GUILDS, guild_messages, 32768]
    shards: 16
    shard_ids: "0-3, 8-9"
    compression: zstd-stream
    large_threshold: 100
    request_members: yes
    filters: {ignore: [TYPING_START], cache_only: ["PRESENCE_*"], drop_bots: true, prefixes: ["!"]}
    routes:
      - {events: ["MESSAGE_*"], stream: msgs, maxlen: 1_000, groups: [w]}
    default_stream: {stream: rest, max_age: 1h}
    cache: {namespace: shared, entities: [guilds, members]}
  - name: other
    token: plain-token-1234
    intents: 513
    shard_ids: [1, 2, "5-6"]
`
	cfg, err := parseConfig("f.yaml", []byte(doc), envOf(map[string]string{"TOK": testToken, "PW": "pa$$word", "ADMIN": "0123456789abcdef0123"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.URL != "redis://:pa$$word@localhost:6380/2" {
		t.Errorf("redis.url: got %q (a $ inside an expanded value must stay)", cfg.Redis.URL)
	}
	if cfg.IdentifyWindow.D() != 1500*time.Millisecond {
		t.Errorf("identify_window: got %v", cfg.IdentifyWindow.D())
	}
	a := cfg.Bots[0]
	if want := uint64(1 | 512 | 32768); a.Intents.Value != want {
		t.Errorf("intents: got %d, want %d", a.Intents.Value, want)
	}
	if want := (ShardIDs{0, 1, 2, 3, 8, 9}); !reflect.DeepEqual(a.ShardIDs, want) {
		t.Errorf("shard_ids: got %v, want %v", a.ShardIDs, want)
	}
	if a.Shards != 16 || !a.RequestMembers || a.LargeThreshold != 100 || a.Routes[0].MaxLen != 1000 || a.DefaultStream.MaxAge.D() != time.Hour {
		t.Errorf("bot: got %+v", a)
	}
	if want := (ShardIDs{1, 2, 5, 6}); !reflect.DeepEqual(cfg.Bots[1].ShardIDs, want) {
		t.Errorf("bots[1].shard_ids: got %v, want %v", cfg.Bots[1].ShardIDs, want)
	}
	if cfg.Bots[1].Intents.Value != 513 {
		t.Errorf("bots[1].intents: got %d", cfg.Bots[1].Intents.Value)
	}
}

// TestParseConfig_Errors: each bad config gives one line that names the
// field and the problem, and never the token.
func TestParseConfig_Errors(t *testing.T) {
	bot := "bots:\n  - name: main\n    token: " + testToken + "\n"
	cases := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown top field", "colour: red\n" + bot, "config f.yaml:1: colour: unknown field"},
		{"unknown bot field", bot + "    tokn: " + testToken + "\n", "bots[0].tokn: unknown field"},
		{"unknown nested field", bot + "    filters: {drop_robots: true}\n", "bots[0].filters.drop_robots: unknown field"},
		{"wrong type int", bot + "    large_threshold: lots\n", `bots[0].large_threshold: want an integer, got "lots"`},
		{"wrong type list", bot + "    routes: {stream: x}\n", "bots[0].routes: want a list, got a mapping"},
		{"wrong type bool", bot + "    request_members: maybe\n", `bots[0].request_members: want true or false, got "maybe"`},
		{"wrong type mapping", "redis: localhost\n" + bot, "redis: want a mapping of fields, got a value"},
		{"token as a list", "bots:\n  - name: main\n    token: [a, b]\n", "bots[0].token: want a string, got a list"},
		{"missing token", "bots:\n  - name: main\n", "config f.yaml:2: bots[0].token: missing"},
		{"empty token", "bots:\n  - name: main\n    token: \"\"\n", "bots[0].token: missing"},
		{"token with Bot prefix", "bots:\n  - name: main\n    token: \"Bot " + testToken + "\"\n", `bots[0].token: write the token without the "Bot " prefix`},
		{"missing name", "bots:\n  - token: " + testToken + "\n", "bots[0].name: missing"},
		{"no bots", "log: {level: info}\n", "bots: missing"},
		{"duplicate bot", bot + "  - name: main\n    token: x1234\n", `bots[1].name: "main" is already the name of bots[0]`},
		{"bad redis url", "redis: {url: \"redis://u:" + testToken + "@host:port:x\"}\n" + bot, "redis.url: not a valid URL"},
		{"bad redis scheme", "redis: {url: \"http://localhost\"}\n" + bot, `redis.url: unsupported scheme "http"`},
		{"redis two modes", "redis: {url: \"redis://x\", embedded: true}\n" + bot, "redis: set exactly one of url, cluster and embedded"},
		{"bad cluster addr", "redis: {cluster: [nohost]}\n" + bot, `redis.cluster[0]: want host:port, got "nohost"`},
		{"bad intent name", bot + "    intents: [GUILDS, GUILD_MESAGES]\n", `bots[0].intents: item 1: unknown intent "GUILD_MESAGES"`},
		{"bad intent bits", bot + "    intents: 131072\n", "bots[0].intents: 131072 has bits that are no gateway intent (bit 17)"},
		{"bad shard range", bot + "    shard_ids: \"15-0\"\n", `bots[0].shard_ids: bad shard range "15-0": end before start`},
		{"bad shard range text", bot + "    shard_ids: \"a-b\"\n", `bots[0].shard_ids: bad shard range "a-b"`},
		{"shard out of range", bot + "    shards: 4\n    shard_ids: \"0-4\"\n", "bots[0].shard_ids: shard 4 is not below shards (4)"},
		{"bad shards", bot + "    shards: many\n", `bots[0].shards: want auto or a positive number, got "many"`},
		{"bad compression", bot + "    compression: gzip\n", `bots[0].compression: unknown compression "gzip"`},
		{"autoscale threshold with a fixed count", bot + "    shards: 4\n    autoscale: {max_guilds_per_shard: 1000}\n", "bots[0].autoscale.max_guilds_per_shard: only applies to shards: auto"},
		{"autoscale threshold above Discord's limit", bot + "    autoscale: {max_guilds_per_shard: 2501}\n", "bots[0].autoscale.max_guilds_per_shard: 2501 is not between 1 and 2500"},
		{"autoscale threshold negative", bot + "    autoscale: {max_guilds_per_shard: -5}\n", "bots[0].autoscale.max_guilds_per_shard: -5 is not between 1 and 2500"},
		{"autoscale threshold not a number", bot + "    autoscale: {max_guilds_per_shard: lots}\n", `bots[0].autoscale.max_guilds_per_shard: want an integer, got "lots"`},
		{"bad duration", "identify_window: 5\n" + bot, `identify_window: want a duration like 5s or 1h30m, got "5"`},
		{"bad log level", "log: {level: loud}\n" + bot, `log.level: unknown log level "loud"`},
		{"bad admin addr", "admin: {addr: localhost}\n" + bot, `admin.addr: want host:port`},
		{"short admin token", "admin: {token: abc}\n" + bot, "admin.token: too short"},
		{"route without stream", bot + "    routes: [{events: [MESSAGE_CREATE]}]\n", "bots[0].routes[0].stream: missing"},
		{"route maxlen and max_age", bot + "    routes: [{stream: s, maxlen: 5, max_age: 1h}]\n", "bots[0].routes[0].maxlen: set maxlen or max_age, not both"},
		{"bad event glob", bot + "    filters: {ignore: [\"message create\"]}\n", `bots[0].filters.ignore[0]: "message create" is not an event name`},
		{"bad cache entity", bot + "    cache: {entities: [guilds, planets]}\n", `bots[0].cache.entities[1]: unknown entity "planets"`},
		{"missing env", "bots:\n  - name: main\n    token: ${NOPE_TOKEN}\n", "config f.yaml:3: bots[0].token: environment variable NOPE_TOKEN is not set"},
		{"syntax error", "bots: [\n", "config f.yaml: "},
		{"duplicate field", bot + "    name: again\n", "bots[0].name: field given twice"},
		{"empty file", "", "config f.yaml: the file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseConfig("f.yaml", []byte(c.doc), envOf(nil))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("got  %q\nwant it to contain %q", msg, c.want)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if strings.Contains(msg, testToken) || strings.Contains(msg, testToken[:20]) {
				t.Errorf("error shows the token: %q", msg)
			}
			var fe *fieldError
			if c.name != "syntax error" && c.name != "empty file" && !errors.As(err, &fe) {
				t.Errorf("error is not a field error: %T", err)
			}
		})
	}
}

func TestExpandString(t *testing.T) {
	env := envOf(map[string]string{"A": "x", "EMPTY": ""})
	cases := []struct{ in, want, err string }{
		{"${A}", "x", ""},
		{"pre-${A}-post", "pre-x-post", ""},
		{"$${A}", "${A}", ""},
		{"a$b", "a$b", ""},
		{"${EMPTY}", "", ""},
		{"${EMPTY:-d}", "d", ""},
		{"${MISSING:-def}", "def", ""},
		{"${MISSING}", "", "environment variable MISSING is not set"},
		{"${A", "", "unterminated ${"},
		{"${1X}", "", "bad environment variable name"},
		{"trailing $", "trailing $", ""},
	}
	for _, c := range cases {
		got, err := expandString(c.in, env)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("expand %q: got error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("expand %q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// TestExampleConfig: the file "feathery init" writes parses and validates.
func TestExampleConfig(t *testing.T) {
	cfg, err := parseConfig("feathery.yaml", exampleConfig, envOf(map[string]string{"DISCORD_TOKEN": testToken}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bots) != 1 || cfg.Bots[0].Token != testToken {
		t.Errorf("got %+v", cfg.Bots)
	}
	if _, err := parseConfig("feathery.yaml", exampleConfig, envOf(nil)); err == nil || !strings.Contains(err.Error(), "DISCORD_TOKEN is not set") {
		t.Errorf("without DISCORD_TOKEN: got %v, want an error naming it", err)
	}
}

func TestRedisURLValidation(t *testing.T) {
	good := []string{"redis://localhost", "redis://localhost:6379", "rediss://u:p@h:1/3", "redis://[::1]:6379/0", "redis://[::1]", "unix:///tmp/r.sock"}
	bad := map[string]string{
		"redis://host:6379:1/0": "redis.url: host and port",
		"redis://host:0":        `redis.url: port "0" is not a port number`,
		"redis://:6379":         "redis.url: missing host",
		"redis:///0":            "redis.url: missing host",
		"redis://h/x":           `redis.url: database "x" in the path is not a number`,
		"ftp://h":               `redis.url: unsupported scheme "ftp"`,
		"redis://u:p@h:99999":   "redis.url: ",
	}
	for _, u := range good {
		r := RedisConfig{URL: u}
		if err := r.validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for u, want := range bad {
		r := RedisConfig{URL: u}
		err := r.validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", u, err, want)
		}
	}
}

// TestConfigDoc: CONFIG.md documents every field of the schema.
func TestConfigDoc(t *testing.T) {
	doc, err := os.ReadFile("CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeOf(Config{}).PkgPath() {
			return
		}
		if _, self := reflect.New(typ).Interface().(nodeDecoder); self {
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "`"+path+name) {
				t.Errorf("CONFIG.md does not document %s%s", path, name)
			}
			walk(typ.Field(i).Type, path+name+".")
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}

func TestPresence(t *testing.T) {
	bot := "bots:\n  - name: main\n    token: x12345\n"
	cfg, err := parseConfig("f.yaml", []byte(bot+"    presence: {status: idle, activities: [{name: \"the gateway\", type: 3}]}\n"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"status":"idle","since":null,"afk":false,"activities":[{"name":"the gateway","type":3}]}`
	if got := string(gatewayBots(cfg)[0].Presence); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	cfg, err = parseConfig("f.yaml", []byte(bot+"    presence: {}\n"), envOf(nil))
	if err != nil || string(cfg.Bots[0].Presence.JSON) != `{"status":"online","since":null,"afk":false,"activities":[]}` {
		t.Errorf("empty presence: %v %s", err, cfg.Bots[0].Presence.JSON)
	}
	if cfg, _ := parseConfig("f.yaml", []byte(bot), envOf(nil)); gatewayBots(cfg)[0].Presence != nil {
		t.Error("no presence configured, but one is sent")
	}
	for doc, want := range map[string]string{
		"    presence: {status: busy}\n":                     `bots[0].presence: status "busy": want one of online`,
		"    presence: {activities: [{type: 1}]}\n":          "bots[0].presence: activities[0].name: missing",
		"    presence: {activities: [{name: a, type: 9}]}\n": "bots[0].presence: activities[0].type: 9 is not an activity type",
		"    presence: {mood: happy}\n":                      "bots[0].presence: mood: unknown field",
		"    presence: online\n":                             "bots[0].presence: want a mapping",
	} {
		_, err := parseConfig("f.yaml", []byte(bot+doc), envOf(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", doc, err, want)
		}
	}
}
