package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const deployDir = "../../docs/deploy"

func readDeploy(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeploy_SystemdUnit: the unit passes `systemd-analyze verify` (with
// ExecStart pointing at a real executable) without a warning, runs as a
// non-root user, restarts, and gives SIGTERM more time than
// shutdown_timeout's default.
func TestDeploy_SystemdUnit(t *testing.T) {
	unit := readDeploy(t, "feathery.service")
	for _, want := range []string{"User=feathery", "Restart=always", "KillSignal=SIGTERM", "ExecStart=/usr/local/bin/feathery run -c /etc/feathery/feathery.yaml"} {
		if !bytes.Contains(unit, []byte(want+"\n")) {
			t.Errorf("unit lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)s$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("unit has no TimeoutStopSec=Ns")
	}
	if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second <= defaultShutdownTimeout {
		t.Errorf("TimeoutStopSec=%ss is not above shutdown_timeout's default %s", m[1], defaultShutdownTimeout)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "feathery.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/feathery"), []byte(exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), sa, "verify", path)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDeploy_Dockerfile: multi-stage, a static (cgo-free) binary, a
// non-root user.
func TestDeploy_Dockerfile(t *testing.T) {
	df := string(readDeploy(t, "Dockerfile"))
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "COPY --from=build", "./cmd/feathery"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(df)
	if m == nil || strings.HasPrefix(m[1], "0") || strings.HasPrefix(m[1], "root") {
		t.Errorf("Dockerfile USER %v, want a non-root user", m)
	}
}

// TestDeploy_Compose: Redis with AOF, the fake Discord and two feathery
// nodes with distinct node ids and a stop grace above shutdown_timeout;
// the nodes' config file is valid.
func TestDeploy_Compose(t *testing.T) {
	var doc struct {
		Services map[string]struct {
			Command         []string          `yaml:"command"`
			Environment     map[string]string `yaml:"environment"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
			Volumes         []string          `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(readDeploy(t, "compose.yaml"), &doc); err != nil {
		t.Fatal(err)
	}
	redis, ok := doc.Services["redis"]
	if !ok || !strings.Contains(strings.Join(redis.Command, " "), "--appendonly yes") {
		t.Errorf("compose: redis service without AOF: %+v", redis)
	}
	if f, ok := doc.Services["fakediscord"]; !ok || len(f.Command) == 0 || f.Command[0] != "fakediscord" {
		t.Errorf("compose: no fakediscord service: %+v", f)
	}
	ids := map[string]bool{}
	for name, s := range doc.Services {
		if !strings.HasPrefix(name, "feathery") {
			continue
		}
		ids[s.Environment["FEATHERY_NODE_ID"]] = true
		d, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil || d <= defaultShutdownTimeout {
			t.Errorf("compose: %s stop_grace_period %q, want above %s", name, s.StopGracePeriod, defaultShutdownTimeout)
		}
	}
	if len(ids) != 2 || ids[""] {
		t.Errorf("compose: feathery nodes with ids %v, want two distinct", ids)
	}
	cfg, err := parseConfig("feathery.compose.yaml", readDeploy(t, "feathery.compose.yaml"), func(k string) (string, bool) {
		if k == "FEATHERY_NODE_ID" {
			return "a", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.fleetEnabled() || cfg.Node.ID != "a" {
		t.Errorf("compose config: fleet %v, node %q", cfg.fleetEnabled(), cfg.Node.ID)
	}
}

// TestDeploy_Kubernetes: replicas, a grace period above shutdown_timeout,
// readiness on /healthz, a non-root pod, the pod name as node id.
func TestDeploy_Kubernetes(t *testing.T) {
	var d struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					Containers []struct {
						Env []struct {
							Name      string `yaml:"name"`
							ValueFrom struct {
								FieldRef struct {
									FieldPath string `yaml:"fieldPath"`
								} `yaml:"fieldRef"`
							} `yaml:"valueFrom"`
						} `yaml:"env"`
						ReadinessProbe struct {
							HTTPGet struct {
								Path string `yaml:"path"`
							} `yaml:"httpGet"`
						} `yaml:"readinessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(readDeploy(t, "kubernetes.yaml"), &d); err != nil {
		t.Fatal(err)
	}
	ps := d.Spec.Template.Spec
	if d.Kind != "Deployment" || d.Spec.Replicas < 2 || len(ps.Containers) != 1 {
		t.Fatalf("kubernetes.yaml: kind %s, %d replicas, %d containers", d.Kind, d.Spec.Replicas, len(ps.Containers))
	}
	if time.Duration(ps.TerminationGracePeriodSeconds)*time.Second <= defaultShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d is not above shutdown_timeout %s", ps.TerminationGracePeriodSeconds, defaultShutdownTimeout)
	}
	c := ps.Containers[0]
	if c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe on %q, want /healthz", c.ReadinessProbe.HTTPGet.Path)
	}
	if !ps.SecurityContext.RunAsNonRoot {
		t.Error("pod may run as root")
	}
	found := false
	for _, e := range c.Env {
		found = found || e.Name == "FEATHERY_NODE_ID" && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}
	if !found {
		t.Error("FEATHERY_NODE_ID is not the pod name")
	}
}
