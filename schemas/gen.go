package schemas

// flow.pb.go is committed; regenerate with `make generate` (protoc from
// Debian's protobuf-compiler, protoc-gen-go from go.mod's tool directive).
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative flow.proto"
