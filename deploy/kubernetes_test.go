package deploy

// Kubernetes: kustomize builds the kustomization in-process (krusty, the
// code `kubectl apply -k` runs), and every object it emits is decoded
// strictly into the real API types (k8s.io/api): an unknown, misspelt or
// misplaced field, or a value of the wrong type, fails. Then the probe's
// pod is held to what the probe needs (capabilities, bpffs, /sys, its pin
// and state directories) and the collector's to needing nothing.

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// Measured (measure_test.go; README.md, "Resource requests"): the probe's
// highest VmHWM plus its BPF maps, and its RSS plus maps at 200k flows.
const (
	probePeakMiB   = 293.2 + 228.2 // BPF maps: the open-addressing tables (README.md)
	probeSteadyMiB = 139.1 + 228.2
	collPeakMiB    = 94.9
)

// k8sObjects are the kustomization's output, decoded into API types.
type k8sObjects struct {
	namespaces  []corev1.Namespace
	daemonSets  []appsv1.DaemonSet
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
}

// decodeStrict decodes one object's YAML into its API type by kind.
// sigs.k8s.io/yaml goes through JSON with the API types' json tags, as the
// API server does; strict mode rejects unknown and duplicate fields.
func (o *k8sObjects) decodeStrict(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := sigsyaml.Unmarshal(doc, &head); err != nil {
		return fmt.Errorf("object header: %w", err)
	}
	var err error
	switch head.APIVersion + " " + head.Kind {
	case "v1 Namespace":
		var v corev1.Namespace
		if err = sigsyaml.UnmarshalStrict(doc, &v); err == nil {
			o.namespaces = append(o.namespaces, v)
		}
	case "apps/v1 DaemonSet":
		var v appsv1.DaemonSet
		if err = sigsyaml.UnmarshalStrict(doc, &v); err == nil {
			o.daemonSets = append(o.daemonSets, v)
		}
	case "apps/v1 Deployment":
		var v appsv1.Deployment
		if err = sigsyaml.UnmarshalStrict(doc, &v); err == nil {
			o.deployments = append(o.deployments, v)
		}
	case "v1 Service":
		var v corev1.Service
		if err = sigsyaml.UnmarshalStrict(doc, &v); err == nil {
			o.services = append(o.services, v)
		}
	case "v1 ConfigMap":
		var v corev1.ConfigMap
		if err = sigsyaml.UnmarshalStrict(doc, &v); err == nil {
			o.configMaps = append(o.configMaps, v)
		}
	default:
		return fmt.Errorf("%s %s: a kind this test does not know: add it", head.APIVersion, head.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", head.APIVersion, head.Kind, err)
	}
	return nil
}

// kustomize runs `kustomize build dir` in-process and returns each object
// as YAML.
func kustomize(dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		docs = append(docs, b)
	}
	return docs, nil
}

// TestKubernetesStrictDecodeRejects: the decoding above would catch a
// mistake. A misspelt field, a field at the wrong level and a wrong type
// in the shipped DaemonSet each fail.
func TestKubernetesStrictDecodeRejects(t *testing.T) {
	docs, err := kustomize("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	var ds []byte
	for _, d := range docs {
		if strings.Contains(string(d), "kind: DaemonSet") {
			ds = d
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet in the kustomization")
	}
	var o k8sObjects
	if err := o.decodeStrict(ds); err != nil {
		t.Fatalf("the shipped DaemonSet: %v", err)
	}
	// A pod field (hostPID) put in the container's securityContext, at
	// the indentation of its readOnlyRootFilesystem: valid YAML, wrong API.
	indent := regexp.MustCompile(`(?m)^( *)readOnlyRootFilesystem: true$`).FindStringSubmatch(string(ds))
	if indent == nil {
		t.Fatal("no readOnlyRootFilesystem: true in the DaemonSet as kustomize emits it")
	}
	for _, c := range []struct{ what, old, new string }{
		{"misspelt field", "hostNetwork: true", "hostNetwrk: true"},
		{"field at the wrong level", indent[0], indent[0] + "\n" + indent[1] + "hostPID: false"},
		{"wrong type", "hostNetwork: true", "hostNetwork: \"yes\""},
	} {
		bad := strings.Replace(string(ds), c.old, c.new, 1)
		if bad == string(ds) {
			t.Fatalf("%s: %q not found in the DaemonSet as kustomize emits it", c.what, c.old)
		}
		if err := sigsyaml.Unmarshal([]byte(bad), new(any)); err != nil {
			t.Fatalf("%s: the altered DaemonSet is not even YAML, so it proves nothing: %v", c.what, err)
		}
		if err := o.decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", c.what)
		} else {
			t.Logf("%s: %v", c.what, err)
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	p := built(t)
	docs, err := kustomize("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	var o k8sObjects
	for _, d := range docs {
		if err := o.decodeStrict(d); err != nil {
			t.Errorf("%v\n%s", err, d)
		}
	}
	if len(o.namespaces) != 1 || len(o.daemonSets) != 1 || len(o.deployments) != 1 || len(o.services) != 1 || len(o.configMaps) != 2 {
		t.Fatalf("want 1 Namespace, 1 DaemonSet, 1 Deployment, 1 Service, 2 ConfigMaps; got %d, %d, %d, %d, %d",
			len(o.namespaces), len(o.daemonSets), len(o.deployments), len(o.services), len(o.configMaps))
	}
	ns := o.namespaces[0].Name
	if ns != "xdpflow" || o.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %q %v: xdpflow, labelled pod-security privileged (hostNetwork, hostPath, capabilities)", ns, o.namespaces[0].Labels)
	}
	ds, dep, svc := o.daemonSets[0], o.deployments[0], o.services[0]
	for _, m := range []struct{ kind, name, ns string }{
		{"DaemonSet", ds.Name, ds.Namespace}, {"Deployment", dep.Name, dep.Namespace}, {"Service", svc.Name, svc.Namespace},
		{"ConfigMap", o.configMaps[0].Name, o.configMaps[0].Namespace}, {"ConfigMap", o.configMaps[1].Name, o.configMaps[1].Namespace},
	} {
		if m.ns != ns {
			t.Errorf("%s %s: namespace %q, want %q", m.kind, m.name, m.ns, ns)
		}
	}
	// The generated ConfigMaps' names carry a hash; kustomize must have
	// rewritten the pods' references to them.
	cms := map[string]corev1.ConfigMap{}
	for _, cm := range o.configMaps {
		cms[cm.Name] = cm
	}

	checkPod := func(what string, tpl corev1.PodTemplateSpec, sel map[string]string, flags map[string]bool) corev1.Container {
		for k, v := range sel {
			if tpl.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod template", what, k, v)
			}
		}
		if len(tpl.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", what, len(tpl.Spec.Containers))
		}
		c := tpl.Spec.Containers[0]
		checkArgs(t, what, c.Args, flags)
		if !strings.HasPrefix(c.Image, "registry.example.com/xdpflow/") {
			t.Errorf("%s: image %q: kustomize's images: should have renamed it", what, c.Image)
		}
		ports := map[string]bool{}
		for _, pt := range c.Ports {
			ports[pt.Name] = true
		}
		for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if pr == nil || pr.HTTPGet == nil {
				t.Errorf("%s: HTTP readiness and liveness probes wanted", what)
				continue
			}
			if pr.HTTPGet.Path != "/readyz" && pr.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: probe path %s", what, pr.HTTPGet.Path)
			}
			if !ports[pr.HTTPGet.Port.String()] {
				t.Errorf("%s: probe port %q is no container port", what, pr.HTTPGet.Port.String())
			}
		}
		if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness must ask /readyz (attached, exports going through)", what)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range tpl.Spec.Volumes {
			vols[v.Name] = v
			if v.ConfigMap != nil {
				if _, ok := cms[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s names ConfigMap %q, which the kustomization does not make", what, v.Name, v.ConfigMap.Name)
				}
			}
		}
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s: mount of unknown volume %s", what, m.Name)
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			t.Fatalf("%s: no securityContext", what)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", what)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", what)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", what)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: capabilities.drop must be [ALL]", what)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil && tpl.Spec.SecurityContext != nil {
			seccomp = tpl.Spec.SecurityContext.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccomp RuntimeDefault wanted", what)
		}
		if tpl.Spec.AutomountServiceAccountToken == nil || *tpl.Spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken: false (neither program talks to the API)", what)
		}
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("%s: cpu and memory requests and a memory limit wanted: %v", what, r)
		}
		if !r.Limits.Cpu().IsZero() {
			t.Errorf("%s: no CPU limit (throttling the probe's drain fills the kernel table)", what)
		}
		return c
	}
	mib := func(q interface{ Value() int64 }) float64 { return float64(q.Value()) / (1 << 20) }

	// The probe.
	pod := ds.Spec.Template.Spec
	pc := checkPod("DaemonSet xdpflow-probe", ds.Spec.Template, ds.Spec.Selector.MatchLabels, p.probeFlags)
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("probe: hostNetwork (it attaches to the node's interfaces) with dnsPolicy ClusterFirstWithHostNet wanted")
	}
	sc := pc.SecurityContext
	var add []string
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			add = append(add, "CAP_"+string(c))
		}
	}
	sort.Strings(add)
	if !slices.Equal(add, probeCaps) {
		t.Errorf("probe: capabilities.add = %v, want %v", add, probeCaps)
	}
	// uid 0: /sys/fs/bpf is root's, mode 0700, and the pins go there.
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) {
		t.Errorf("probe: runAsUser 0 wanted (pins under root's /sys/fs/bpf)")
	}
	if pod.HostPID || pod.HostIPC {
		t.Errorf("probe: needs neither hostPID nor hostIPC")
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range pc.VolumeMounts {
		mounts[m.MountPath] = m
	}
	// The node's bpffs, writable, and seeing the node's later mounts (the
	// node mounts bpffs at boot, maybe after the kubelet starts the pod).
	bpf := mounts["/sys/fs/bpf"]
	if hostPaths[bpf.Name] != "/sys/fs/bpf" || bpf.ReadOnly {
		t.Errorf("probe: the node's /sys/fs/bpf must be mounted writable at /sys/fs/bpf (pins)")
	}
	if bpf.MountPropagation == nil || *bpf.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("probe: /sys/fs/bpf wants mountPropagation HostToContainer")
	}
	// /sys for the interfaces' attributes; read-only is enough.
	if sys := mounts["/sys"]; hostPaths[sys.Name] != "/sys" || !sys.ReadOnly {
		t.Errorf("probe: the node's /sys must be mounted read-only at /sys")
	}
	// The probe's default pin and state directories must be on the node,
	// not in the container: otherwise a restarted pod starts from nothing.
	for _, flag := range []string{"pin-path", "state-dir"} {
		def := flagDefault(p.probeHelp, flag)
		if def == "" {
			t.Fatalf("--%s: no default in --help", flag)
		}
		dir := path.Dir(def) // /sys/fs/bpf/xdpflow, /run/xdpflow
		found := false
		for mp, m := range mounts {
			if (dir == mp || strings.HasPrefix(dir, mp+"/")) && hostPaths[m.Name] != "" && !m.ReadOnly && mp != "/sys" {
				found = true
			}
		}
		if !found {
			t.Errorf("probe: --%s defaults to %s, which is on no writable host mount", flag, def)
		}
	}
	// The spool (--kafka-spool-dir) on a node path too.
	var probeCfg string
	for _, a := range pc.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			probeCfg = v
		}
		if v, ok := strings.CutPrefix(a, "--metrics="); ok && !strings.HasPrefix(v, "$(HOST_IP):") {
			t.Errorf("probe: --metrics=%s: with hostNetwork, bind the node's address (kubelet probes it there)", v)
		}
		if v, ok := strings.CutPrefix(a, "--kafka-spool-dir="); ok {
			if m := mounts[path.Dir(v)]; hostPaths[m.Name] == "" {
				t.Errorf("probe: --kafka-spool-dir=%s is not on a node path", v)
			}
		}
	}
	hostIP := false
	for _, e := range pc.Env {
		if e.Name == "HOST_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.hostIP" {
			hostIP = true
		}
	}
	if !hostIP {
		t.Errorf("probe: env HOST_IP from status.hostIP wanted (--metrics uses it)")
	}
	if cfg := mounts[path.Dir(probeCfg)]; probeCfg != "/etc/xdpflow/probe.yaml" || cfg.Name != "config" || !cfg.ReadOnly {
		t.Errorf("probe: config %q not from the ConfigMap mounted read-only at /etc/xdpflow", probeCfg)
	}
	checkConfigKeys(t, "kubernetes/probe.yaml", p.probeFlags)
	if got := mib(pc.Resources.Limits.Memory()); got < 1.5*probePeakMiB {
		t.Errorf("probe: memory limit %.0f MiB is under 1.5 x the measured peak %.0f MiB", got, probePeakMiB)
	}
	if got := mib(pc.Resources.Requests.Memory()); got < probeSteadyMiB {
		t.Errorf("probe: memory request %.0f MiB is under the measured steady state %.0f MiB", got, probeSteadyMiB)
	}

	// The collector.
	cpod := dep.Spec.Template.Spec
	cc := checkPod("Deployment xdpflow-collector", dep.Spec.Template, dep.Spec.Selector.MatchLabels, p.collFlags)
	if cpod.HostNetwork || (cc.SecurityContext.Capabilities != nil && len(cc.SecurityContext.Capabilities.Add) > 0) {
		t.Errorf("collector: needs neither hostNetwork nor capabilities")
	}
	if psc := cpod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("collector: runAsNonRoot with a non-zero runAsUser wanted")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("collector: one replica, Recreate (an exporter's templates live in one collector)")
	}
	collCfg := checkConfigKeys(t, "kubernetes/collector.yaml", p.collFlags)
	if m, _ := collCfg["metrics"].(string); !strings.HasPrefix(m, "0.0.0.0:") {
		t.Errorf("collector: metrics %q: kubelet and Prometheus reach the pod's address", m)
	}
	if got := mib(cc.Resources.Limits.Memory()); got < 2*collPeakMiB {
		t.Errorf("collector: memory limit %.0f MiB is under 2 x the measured peak %.0f MiB", got, collPeakMiB)
	}
	portsByName := map[string]string{}
	for _, pt := range cc.Ports {
		portsByName[pt.Name] = fmt.Sprintf("%d/%s", pt.ContainerPort, pt.Protocol)
	}
	listens := map[string]bool{}
	for _, l := range collCfg["listen"].([]any) {
		proto, addr, _ := strings.Cut(l.(string), "://")
		listens[addr[strings.LastIndexByte(addr, ':')+1:]+"/"+strings.ToUpper(proto)] = true
	}
	for _, sp := range svc.Spec.Ports {
		cp, ok := portsByName[sp.TargetPort.String()]
		if !ok || !strings.HasSuffix(cp, "/"+string(sp.Protocol)) {
			t.Errorf("service port %s: target %s (%s) is not a container port of that protocol", sp.Name, sp.TargetPort.String(), cp)
		}
		if !listens[cp] {
			t.Errorf("service port %s: the collector does not listen on %s", sp.Name, cp)
		}
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("service selector %s=%s matches no collector pod", k, v)
		}
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP && svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("service: externalTrafficPolicy Local keeps the exporters' addresses")
	}
}
