//go:build !linux

package lsm

import "errors"

var errNoDirect = errors.New("lsm: no direct writes on this system")

func openDirect(string) (*directFile, error) { return nil, errNoDirect }

func (d *directFile) close() {}

func pwrite(int, []byte, int64) (int, error) { return 0, errNoDirect }

func directUnsupported(err error) bool { return errors.Is(err, errNoDirect) }
