// Command cert-manager-controller runs cert-manager's controller out of cluster for
// bench/compare.py: every controller cert-manager enables by default, its default
// configuration, one replica (no leader election), no webhook, no metrics or health
// servers (nothing scrapes them here).
//
//	cert-manager-controller -kubeconfig FILE [-cluster-resource-namespace NS]
//
// hack/build-cert-manager builds it in a module whose path lies inside
// github.com/cert-manager/cert-manager/, so it may import that module's internal/
// packages: the defaults and the controller registry live there, and cert-manager's own
// cmd/controller module is not published on the Go module proxy.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"

	config "github.com/cert-manager/cert-manager/internal/apis/config/controller"
	configscheme "github.com/cert-manager/cert-manager/internal/apis/config/controller/scheme"
	configdefaults "github.com/cert-manager/cert-manager/internal/apis/config/controller/v1alpha1"
	configv1alpha1 "github.com/cert-manager/cert-manager/pkg/apis/config/controller/v1alpha1"
	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Imported for their init(): each registers its controllers with controller.Known(),
	// the set cert-manager's controller binary registers.
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/venafi"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster to run against")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "",
		"where ClusterIssuers' Secrets live (default: cert-manager's, kube-system)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf.InitLogs()
	defer logf.FlushLogs()

	if err := run(ctx, *kubeconfig, *clusterResourceNamespace); err != nil {
		logf.Log.Error(err, "cert-manager controller failed")
		os.Exit(1)
	}
}

// defaultConfiguration is cert-manager's controller configuration with every default
// applied, as its controller binary starts from before reading flags.
func defaultConfiguration() (*config.ControllerConfiguration, error) {
	scheme, _, err := configscheme.NewSchemeAndCodecs()
	if err != nil {
		return nil, err
	}
	versioned := &configv1alpha1.ControllerConfiguration{}
	scheme.Default(versioned)
	cfg := &config.ControllerConfiguration{}
	if err := scheme.Convert(versioned, cfg, nil); err != nil {
		return nil, err
	}
	return cfg, nil
}

func quantities(values ...string) ([]resource.Quantity, error) {
	parsed := make([]resource.Quantity, len(values))
	for i, value := range values {
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, fmt.Errorf("quantity %q: %w", value, err)
		}
		parsed[i] = q
	}
	return parsed, nil
}

func contextOptions(cfg *config.ControllerConfiguration) (controller.ContextOptions, error) {
	http01 := cfg.ACMEHTTP01Config
	solver, err := quantities(http01.SolverResourceRequestCPU, http01.SolverResourceRequestMemory,
		http01.SolverResourceLimitsCPU, http01.SolverResourceLimitsMemory)
	if err != nil {
		return controller.ContextOptions{}, err
	}
	return controller.ContextOptions{
		Kubeconfig: cfg.KubeConfig,
		// -1: no client-side rate limit. cert-manager chooses this itself when the
		// apiserver has API Priority and Fairness on (the default in every cluster users
		// run); the bench's apiserver profile runs with it off, where cert-manager would
		// otherwise fall back to 20 QPS and measure its throttle, not its work.
		KubernetesAPIQPS:   -1,
		KubernetesAPIBurst: -1,
		Namespace:          cfg.Namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        cfg.ClusterResourceNamespace,
			ClusterIssuerAmbientCredentials: cfg.ClusterIssuerAmbientCredentials,
			IssuerAmbientCredentials:        cfg.IssuerAmbientCredentials,
		},
		ACMEOptions: controller.ACMEOptions{
			HTTP01SolverImage:                 http01.SolverImage,
			HTTP01SolverResourceRequestCPU:    solver[0],
			HTTP01SolverResourceRequestMemory: solver[1],
			HTTP01SolverResourceLimitsCPU:     solver[2],
			HTTP01SolverResourceLimitsMemory:  solver[3],
			ACMEHTTP01SolverRunAsNonRoot:      http01.SolverRunAsNonRoot,
			HTTP01SolverNameservers:           http01.SolverNameservers,
			DNS01Nameservers:                  cfg.ACMEDNS01Config.RecursiveNameservers,
			DNS01CheckRetryPeriod:             cfg.ACMEDNS01Config.CheckRetryPeriod,
			DNS01CheckAuthoritative:           !cfg.ACMEDNS01Config.RecursiveNameserversOnly,
		},
		SchedulerOptions: controller.SchedulerOptions{
			MaxConcurrentChallenges: cfg.MaxConcurrentChallenges,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerName:                 cfg.IngressShimConfig.DefaultIssuerName,
			DefaultIssuerKind:                 cfg.IngressShimConfig.DefaultIssuerKind,
			DefaultIssuerGroup:                cfg.IngressShimConfig.DefaultIssuerGroup,
			DefaultAutoCertificateAnnotations: cfg.IngressShimConfig.DefaultAutoCertificateAnnotations,
			ExtraCertificateAnnotations:       cfg.IngressShimConfig.ExtraCertificateAnnotations,
			GatewayAPIExtraProtocols:          sets.New[string](),
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           cfg.EnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 cfg.CopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: cfg.CertificateRequestMinimumBackoffDuration,
			CertificateRequestMaximumBackoffDuration: cfg.CertificateRequestMaximumBackoffDuration,
		},
	}, nil
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string) error {
	cfg, err := defaultConfiguration()
	if err != nil {
		return fmt.Errorf("default configuration: %w", err)
	}
	cfg.KubeConfig = kubeconfig
	if clusterResourceNamespace != "" {
		cfg.ClusterResourceNamespace = clusterResourceNamespace
	}
	if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
		return fmt.Errorf("logging configuration: %w", err)
	}
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	options, err := contextOptions(cfg)
	if err != nil {
		return err
	}
	factory, err := controller.NewContextFactory(ctx, options)
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("controller context: %w", err)
	}

	enabled := sets.New(configdefaults.DefaultEnabledControllers...)
	group, ctx := errgroup.WithContext(ctx)
	for name, constructor := range controller.Known() {
		if !enabled.Has(name) {
			continue
		}
		c, err := constructor(factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		group.Go(func() error { return c.Run(cfg.NumberOfConcurrentWorkers, ctx) })
	}
	// Informers start after every controller has registered the ones it watches.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	return group.Wait()
}
