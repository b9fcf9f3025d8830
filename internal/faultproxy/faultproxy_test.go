package faultproxy

import (
	"io"
	"net"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string, within time.Duration) (string, error) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestFreezeThawCut(t *testing.T) {
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(t, c, "hello", 2*time.Second); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}

	p.Freeze()
	if got, err := roundTrip(t, c, "frozen", 300*time.Millisecond); err == nil || got != "" {
		t.Fatalf("frozen proxy forwarded %q", got)
	}
	// A connection opened while frozen is accepted but forwards nothing.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(t, c2, "new", 300*time.Millisecond); err == nil || got != "" {
		t.Fatalf("frozen proxy forwarded %q on a new connection", got)
	}
	p.Thaw()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, len("frozen"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "frozen" {
		t.Fatalf("held data after thaw: %q %v", buf, err)
	}
	buf = make([]byte, len("new"))
	_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "new" {
		t.Fatalf("held data of the new connection after thaw: %q %v", buf, err)
	}

	if n := p.Cut(); n != 2 {
		t.Errorf("Cut closed %d connections, want 2", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Cut")
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(t, c3, "again", 2*time.Second); err != nil || got != "again" {
		t.Fatalf("after Cut: %q %v", got, err)
	}
	if p.Accepted() != 3 {
		t.Errorf("Accepted %d, want 3", p.Accepted())
	}
}
