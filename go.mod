module github.com/xdpflow/xdpflow

go 1.25.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/gopacket/gopacket v1.7.7
	github.com/netsampler/goflow2/v2 v2.2.6
	github.com/spf13/pflag v1.1.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.45.0
	gopkg.in/yaml.v3 v3.0.1
)

require golang.org/x/net v0.55.0 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go
