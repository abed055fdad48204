package consumers_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/feathery/feathery/gateway/testkit"
)

// A consumer binary links the key layout, not the broker: neither the
// broker nor its scripts, embedded Redis or Lua interpreter. (sonic stays:
// consumers decode entries with it themselves.)
func TestConsumersDoNotLinkBroker(t *testing.T) {
	t.Parallel()
	deps := testkit.NonStandardDeps(t, ".")
	for _, d := range deps {
		if d == "github.com/feathery/feathery/broker" ||
			d == "github.com/feathery/feathery/luascripts" ||
			strings.HasPrefix(d, "github.com/alicebob/miniredis") ||
			strings.HasPrefix(d, "github.com/yuin/gopher-lua") {
			t.Errorf("consumers links %s", d)
		}
	}
	if !slices.Contains(deps, "github.com/feathery/feathery/broker/keyspace") {
		t.Errorf("consumers does not link broker/keyspace (deps %v)", deps)
	}
}
