package bpf

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

func isPerm(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
