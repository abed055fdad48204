// Package python embeds the Python consumer library (feathery_consumer.py,
// feathery_events.py) so that `feathery new consumer --lang python` writes
// these very files into a generated project: one copy, here.
package python

import "embed"

// Library holds the library's modules, by file name.
//
//go:embed feathery_consumer.py feathery_events.py
var Library embed.FS
