package producer_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/app"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/producer"
)

// Upload a Matroska recording to a stream with PutMedia: the producer
// keeps each fragment until the endpoint acknowledges it PERSISTED and
// re-sends what was not, over a new connection, when one fails.
func Example() {
	endpoint, stop := startBox() // a kvsedge box on loopback with a stream "cam"
	defer stop()

	p, err := producer.New(producer.Config{
		Endpoint:    endpoint, // the PUT_MEDIA data endpoint (GetDataEndpoint)
		StreamName:  "cam",
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "example-secret-key", ""),
	})
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Open(fixture.Path(fixture.RelativeH264AAC + ".mkv")) // 6 fragments from the real KVS C producer
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	st, err := p.Put(context.Background(), f, producer.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent %d fragments, %d persisted\n", st.Fragments, st.Persisted)
	// Output: sent 6 fragments, 6 persisted
}

// startBox runs the appliance in this process with one stream and returns
// its endpoint.
func startBox() (string, func()) {
	dir, err := os.MkdirTemp("", "producer-example")
	if err != nil {
		log.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen, cfg.DataDir, cfg.Demo, cfg.Profile = "127.0.0.1:0", dir, false, "none"
	cfg.AccessKeyID, cfg.SecretAccessKey = "AKIDEXAMPLE", "example-secret-key"
	a, err := app.Open(app.Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	kvs := kinesisvideo.New(kinesisvideo.Options{Region: "us-east-1", BaseEndpoint: aws.String(a.Endpoint()),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "example-secret-key", "")})
	if _, err := kvs.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam"), DataRetentionInHours: aws.Int32(24)}); err != nil {
		log.Fatal(err)
	}
	return a.Endpoint(), func() { cancel(); <-done; _ = a.Close(); _ = os.RemoveAll(dir) }
}
