package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/shard-proxy/shard-proxy/test/kubeenv"
)

// deployDir holds the kustomize manifests under test.
const deployDir = "../../deploy/statefulset"

// kustomization is the part of kustomization.yaml this test emulates. It is
// decoded strictly: a field kustomize would act on and this test would
// ignore (patches, images, ...) fails the test instead of being skipped.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates"`
	} `json:"labels"`
}

// docSeparator is a line that starts a new document in a YAML stream.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// yamlDocs reads file of deployDir, splits it into documents and returns
// each as JSON, dropping documents that hold only comments.
func yamlDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		j, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if string(j) != "null" {
			docs = append(docs, j)
		}
	}
	return docs
}

// decodeManifest decodes the one object in file into v, rejecting fields
// that v's type does not have.
func decodeManifest(t *testing.T, file string, v any) {
	t.Helper()
	docs := yamlDocs(t, file)
	if len(docs) != 1 {
		t.Fatalf("%s: %d objects; want 1", file, len(docs))
	}
	if err := yaml.UnmarshalStrict(docs[0], v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// testManifests: every manifest the kustomization lists is accepted by a
// real API server (server-side apply, dry run, strict field validation),
// in the kustomization's namespace with its labels. The namespace is
// created for real first: namespaced objects cannot be admitted, even in a
// dry run, into a namespace that does not exist.
func testManifests(t *testing.T, env *kubeenv.Env) {
	var kz kustomization
	decodeManifest(t, "kustomization.yaml", &kz)
	if kz.Namespace == "" || len(kz.Resources) == 0 {
		t.Fatalf("kustomization.yaml: namespace %q, resources %v; want both", kz.Namespace, kz.Resources)
	}
	labels := map[string]string{}
	for _, l := range kz.Labels {
		if l.IncludeSelectors || l.IncludeTemplates {
			t.Fatalf("kustomization.yaml: labels with includeSelectors/includeTemplates are not emulated by this test")
		}
		for k, v := range l.Pairs {
			labels[k] = v
		}
	}
	// Every manifest in the directory is listed, so none is silently left
	// out of `kubectl apply -k`.
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	for _, path := range files {
		if name := filepath.Base(path); name != "kustomization.yaml" && !slices.Contains(kz.Resources, name) {
			t.Errorf("%s is not in kustomization.yaml's resources", name)
		}
	}

	ctx := context.Background()
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kz.Namespace}}
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", kz.Namespace, err)
	}

	force := true
	var accepted []string
	for _, file := range kz.Resources {
		for _, doc := range yamlDocs(t, file) {
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(doc); err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("%s: %s is not served by the API server: %v", file, gvk, err)
				continue
			}
			var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				obj.SetNamespace(kz.Namespace)
				res = dyn.Resource(mapping.Resource).Namespace(kz.Namespace)
			}
			if len(labels) > 0 {
				l := obj.GetLabels()
				if l == nil {
					l = map[string]string{}
				}
				for k, v := range labels {
					l[k] = v
				}
				obj.SetLabels(l)
			}
			data, err := obj.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			what := file + ": " + gvk.Kind + " " + obj.GetName()
			_, err = res.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
				DryRun:          []string{metav1.DryRunAll},
				FieldManager:    "shard-proxy-e2e",
				FieldValidation: metav1.FieldValidationStrict,
				Force:           &force,
			})
			if err != nil {
				t.Errorf("%s: rejected: %v", what, err)
				continue
			}
			accepted = append(accepted, what)
		}
	}
	t.Logf("accepted (server-side apply, dry run) in namespace %s:\n  %s", kz.Namespace, strings.Join(accepted, "\n  "))
	if len(accepted) < len(kz.Resources) {
		t.Errorf("%d objects accepted from %d files", len(accepted), len(kz.Resources))
	}
}
