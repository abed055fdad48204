package main

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// metricsWriter writes the Prometheus text exposition format (version
// 0.0.4). Each family is written whole by one call. Label values are bot
// names, shard ids, event names and states: never a token.
type metricsWriter struct {
	w   *bufio.Writer
	err error
}

func newMetricsWriter(w io.Writer) *metricsWriter {
	return &metricsWriter{w: bufio.NewWriter(w)}
}

// sample is one value of a family; labels are name, value pairs.
type sample struct {
	labels []string
	value  float64
}

func smp(v float64, labels ...string) sample { return sample{labels: labels, value: v} }

// family writes one metric family: HELP, TYPE and its samples. typ is
// "counter" or "gauge". A family without samples is skipped.
func (m *metricsWriter) family(name, typ, help string, samples ...sample) {
	if len(samples) == 0 || m.err != nil {
		return
	}
	w := m.w
	w.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n")
	w.WriteString("# TYPE " + name + " " + typ + "\n")
	for _, s := range samples {
		w.WriteString(name)
		if len(s.labels) > 0 {
			w.WriteByte('{')
			for i := 0; i+1 < len(s.labels); i += 2 {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(s.labels[i])
				w.WriteString(`="`)
				w.WriteString(escapeLabel(s.labels[i+1]))
				w.WriteByte('"')
			}
			w.WriteByte('}')
		}
		w.WriteByte(' ')
		w.WriteString(formatValue(s.value))
		_, m.err = w.WriteString("\n")
	}
}

// Flush writes what is buffered.
func (m *metricsWriter) Flush() error {
	if m.err != nil {
		return m.err
	}
	return m.w.Flush()
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
