package deploy

// TestImage builds the images with podman from deploy/docker/Dockerfile
// and checks what can be checked without running them (podman run fails
// on this machine: README.md). No registry is reachable here, so the two
// base images are replaced, and nothing else: the builder stage by the
// same `go build` run on the host (its output copied in), and
// distroless/static by scratch. Every other instruction of the runtime
// stages (COPY, --chown, USER, EXPOSE, ENTRYPOINT) is the shipped one,
// verbatim. Run by `make test-deploy` (XDPFLOW_DEPLOY_IMAGE=1).

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// containerfileForTest rewrites the shipped Dockerfile's FROM lines: the
// builder stage becomes scratch plus the context's out/ (what its RUN
// builds), the distroless stages become scratch. It fails if the
// Dockerfile has a FROM or a RUN it does not expect, so a change there is
// looked at rather than silently dropped.
func containerfileForTest(dockerfile string) (string, error) {
	var out []string
	inBuild := false
	fromLine := regexp.MustCompile(`^FROM\s+(\S+)\s+AS\s+(\S+)$`)
	for _, l := range strings.Split(dockerfile, "\n") {
		trimmed := strings.TrimSpace(l)
		if m := fromLine.FindStringSubmatch(trimmed); m != nil {
			switch {
			case m[2] == "build" && strings.HasPrefix(m[1], "golang:"):
				inBuild = true
				out = append(out, "FROM scratch AS build", "COPY out/ /out/")
			case m[1] == "gcr.io/distroless/static-debian12:nonroot":
				inBuild = false
				out = append(out, "FROM scratch AS "+m[2])
			default:
				return "", fmt.Errorf("unexpected %q: teach containerfileForTest", trimmed)
			}
			continue
		}
		if strings.HasPrefix(trimmed, "FROM") {
			return "", fmt.Errorf("unexpected %q: teach containerfileForTest", trimmed)
		}
		if inBuild {
			continue // replaced by out/
		}
		if strings.HasPrefix(trimmed, "RUN") {
			return "", fmt.Errorf("a RUN in a runtime stage (%q): the images have no shell", trimmed)
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n"), nil
}

// imageConfig is the part of `podman image inspect` checked here.
type imageConfig struct {
	Size   int64
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Env          []string
	}
}

// imageFile is one file of an image's layers.
type imageFile struct {
	mode     int64
	uid, gid int
	size     int64
	xattrs   map[string]string
}

// imageFiles reads every file of an image from `podman save`
// (docker-archive: manifest.json names the layer tars, in order).
func imageFiles(t *testing.T, image string) map[string]imageFile {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.Command("podman", "save", "--format", "docker-archive", "-o", archive, image).CombinedOutput(); err != nil {
		t.Fatalf("podman save: %v\n%s", err, out)
	}
	read := func(name string, fn func(io.Reader) error) {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				t.Fatalf("%s: no %s", archive, name)
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == name {
				if err := fn(tr); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return
			}
		}
	}
	var manifest []struct{ Layers []string }
	read("manifest.json", func(r io.Reader) error { return json.NewDecoder(r).Decode(&manifest) })
	if len(manifest) != 1 {
		t.Fatalf("manifest.json: %d images", len(manifest))
	}
	files := map[string]imageFile{}
	for _, layer := range manifest[0].Layers {
		read(layer, func(r io.Reader) error {
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				xattrs := map[string]string{}
				for k, v := range h.PAXRecords {
					if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
						xattrs[x] = v
					}
				}
				files["/"+strings.TrimPrefix(filepath.Clean(h.Name), "/")] = imageFile{mode: h.Mode, uid: h.Uid, gid: h.Gid, size: h.Size, xattrs: xattrs}
			}
		})
	}
	return files
}

func TestImage(t *testing.T) {
	if os.Getenv("XDPFLOW_DEPLOY_IMAGE") != "1" {
		t.Skip("builds the images with podman: run by `make test-deploy` (XDPFLOW_DEPLOY_IMAGE=1)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman: %v (Debian package podman)", err)
	}
	p := built(t) // CGO_ENABLED=0 -trimpath -ldflags="-s -w", as the Dockerfile's RUN
	shipped, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := containerfileForTest(string(shipped))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.TempDir()
	for _, f := range []struct{ src, dst string }{{p.probe, "out/xdpflow-probe"}, {p.collector, "out/xdpflow-collector"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(ctx, "out/state"), 0o755)
		if err := os.WriteFile(filepath.Join(ctx, f.dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		target, bin string
		ports       []string
		owned       []string // paths that must belong to 65532 (volumes mounted there start so owned)
	}{
		{"probe", "/usr/local/bin/xdpflow-probe", []string{"9477/tcp"}, nil},
		{"collector", "/usr/local/bin/xdpflow-collector", []string{"2055/udp", "4739/tcp", "4739/udp", "9478/tcp"}, []string{"/var/lib/xdpflow-collector"}},
	} {
		t.Run(c.target, func(t *testing.T) {
			tag := fmt.Sprintf("localhost/xdpflow-%s:deploy-test-%d", c.target, os.Getpid())
			// --layers=false: no cached stage images left behind.
			out, err := exec.Command("podman", "build", "--pull=never", "--layers=false", "-f", filepath.Join(ctx, "Containerfile"), "--target", c.target, "-t", tag, ctx).CombinedOutput()
			if err != nil {
				t.Fatalf("podman build --target %s: %v\n%s", c.target, err, out)
			}
			t.Cleanup(func() { exec.Command("podman", "rmi", "-f", tag).Run() })
			out, err = exec.Command("podman", "image", "inspect", tag).Output()
			if err != nil {
				t.Fatalf("podman image inspect: %v", err)
			}
			var imgs []imageConfig
			if err := json.Unmarshal(out, &imgs); err != nil || len(imgs) != 1 {
				t.Fatalf("podman image inspect: %v\n%s", err, out)
			}
			img := imgs[0]
			// Exec form, the binary itself: no shell runs it.
			if !slices.Equal(img.Config.Entrypoint, []string{c.bin}) || len(img.Config.Cmd) > 0 {
				t.Errorf("entrypoint %q cmd %q, want [%s] and no cmd", img.Config.Entrypoint, img.Config.Cmd, c.bin)
			}
			if img.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532 (distroless nonroot)", img.Config.User)
			}
			var ports []string
			for pt := range img.Config.ExposedPorts {
				ports = append(ports, pt)
			}
			slices.Sort(ports)
			if !slices.Equal(ports, c.ports) {
				t.Errorf("exposed ports %v, want %v", ports, c.ports)
			}
			files := imageFiles(t, tag)
			bin, ok := files[c.bin]
			if !ok {
				t.Fatalf("%s not in the image", c.bin)
			}
			if bin.mode&0o111 == 0 || bin.mode&0o6000 != 0 {
				t.Errorf("%s: mode %o: executable, neither setuid nor setgid", c.bin, bin.mode)
			}
			// No file capabilities (README.md: no_new_privs would ignore
			// them; the probe gets its three from the runtime).
			if caps, ok := bin.xattrs["security.capability"]; ok {
				t.Errorf("%s carries file capabilities (%x)", c.bin, caps)
			}
			for path := range files {
				if strings.HasSuffix(path, "/sh") || strings.HasSuffix(path, "/bash") || strings.HasSuffix(path, "/busybox") {
					t.Errorf("a shell in the image: %s", path)
				}
			}
			for _, o := range c.owned {
				if f, ok := files[o]; !ok || f.uid != 65532 || f.gid != 65532 {
					t.Errorf("%s: want it owned by 65532:65532, got %+v (present %v)", o, f, ok)
				}
			}
			// Size: the static binary and nothing else of weight; the
			// distroless base adds about 2 MiB where it is used.
			var names []string
			for path, f := range files {
				if f.size > 0 {
					names = append(names, fmt.Sprintf("%s (%d)", path, f.size))
				}
			}
			slices.Sort(names)
			t.Logf("%s: image %.1f MiB, binary %.1f MiB, user %s, entrypoint %v, files with content: %v",
				c.target, float64(img.Size)/(1<<20), float64(bin.size)/(1<<20), img.Config.User, img.Config.Entrypoint, names)
			if img.Size > 64<<20 {
				t.Errorf("image %.1f MiB: more than the 64 MiB a static binary on scratch should take", float64(img.Size)/(1<<20))
			}
		})
	}
}
