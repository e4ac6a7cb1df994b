package gateway

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
)

// The page: a server-rendered snapshot of the cluster, whose script fetches
// /ui/body every few seconds and swaps it in. Every read goes through the
// loopback gRPC connection with the caller's credentials; a read that needs
// the leader falls back, when there is none, to this server's own state,
// and the page says that it may be stale.

//go:embed ui
var uiFiles embed.FS

var pageTemplate = template.Must(template.New("page.html").ParseFS(uiFiles, "ui/page.html"))

// tokenCookie holds the bearer token the login form was given.
const tokenCookie = "blobgc_token"

// readTimeout bounds each read the page makes.
const readTimeout = 3 * time.Second

// historyPages bounds how many pages of history one rendering reads.
const historyPages = 5

type ui struct {
	cfg    Config
	client pb.BlobGCClient
	static http.Handler
}

func newUI(cfg Config) *ui {
	sub, _ := fs.Sub(uiFiles, "ui")
	return &ui{cfg: cfg, client: pb.NewBlobGCClient(cfg.Conn),
		static: http.StripPrefix("/ui/static/", http.FileServerFS(sub))}
}

func (u *ui) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:")
	switch r.URL.Path {
	case "/ui", "/ui/":
		u.page(w, r, "page")
	case "/ui/body":
		u.page(w, r, "body")
	case "/ui/login":
		u.login(w, r)
	case "/ui/logout":
		http.SetCookie(w, u.cookie("", -1))
		http.Redirect(w, r, "/ui", http.StatusSeeOther)
	default:
		if strings.HasPrefix(r.URL.Path, "/ui/static/") {
			u.static.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}
}

// authorization is the caller's Authorization value: the header, else the
// login cookie.
func authorization(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		return h
	}
	if c, err := r.Cookie(tokenCookie); err == nil && c.Value != "" {
		return "Bearer " + c.Value
	}
	return ""
}

func (u *ui) page(w http.ResponseWriter, r *http.Request, tmpl string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	authz := authorization(r)
	if err := u.cfg.Admit(r.Context(), authz, auth.PageUI); err != nil {
		u.refuse(w, err)
		return
	}
	v := u.gather(r.Context(), authz, strings.TrimSpace(r.URL.Query().Get("blob")))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = pageTemplate.ExecuteTemplate(w, tmpl, v)
}

// refuse answers a caller the page does not admit: the login form when it
// has no (valid) token, a denial when its role may not read.
func (u *ui) refuse(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	code := http.StatusUnauthorized
	if st.Code() == codes.PermissionDenied {
		code = http.StatusForbidden
	}
	w.WriteHeader(code)
	_ = pageTemplate.ExecuteTemplate(w, "login", map[string]any{"Server": u.cfg.ServerID, "Error": st.Message(), "Denied": code == http.StatusForbidden})
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Redirect(w, r, "/ui", http.StatusSeeOther)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if err := u.cfg.Admit(r.Context(), "Bearer "+token, auth.PageUI); err != nil {
		u.refuse(w, err)
		return
	}
	http.SetCookie(w, u.cookie(token, 0))
	http.Redirect(w, r, "/ui", http.StatusSeeOther)
}

func (u *ui) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: tokenCookie, Value: value, Path: "/ui", MaxAge: maxAge,
		HttpOnly: true, Secure: u.cfg.SecureCookies, SameSite: http.SameSiteStrictMode}
}

// gather makes the page's reads in parallel and builds its view.
func (u *ui) gather(ctx context.Context, authz, query string) *view {
	ctx = callContext(ctx, authz)
	now := time.Now()
	v := &view{Server: u.cfg.ServerID, Now: now.UTC(), Query: query}
	var (
		mu        sync.Mutex
		wg        sync.WaitGroup
		members   *pb.MembersResponse
		stats     *pb.Stats
		config    *pb.Config
		nodes     *pb.ListNodesResponse
		events    []*pb.HistoryEvent
		blob      *pb.BlobStatus
		lookupErr error
		hash      []byte
	)
	problem := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		v.Problems = append(v.Problems, what+": "+status.Convert(err).Message())
	}
	stale := func() {
		mu.Lock()
		defer mu.Unlock()
		v.Stale = "no leader answered: showing what " + u.cfg.ServerID + " has applied, which may be stale"
	}
	// read tries a linearizable read (through the leader) and, when no
	// leader answers, this server's own state.
	read := func(what string, f func(context.Context, pb.Consistency) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := withTimeout(ctx, func(ctx context.Context) error { return f(ctx, pb.Consistency_CONSISTENCY_LINEARIZABLE) })
			if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
				if err = withTimeout(ctx, func(ctx context.Context) error { return f(ctx, pb.Consistency_CONSISTENCY_STALE) }); err == nil {
					stale()
				}
			}
			if err != nil {
				problem(what, err)
			}
		}()
	}
	read("members", func(ctx context.Context, _ pb.Consistency) (err error) {
		members, err = u.client.Members(ctx, &pb.MembersRequest{})
		return err
	})
	read("stats", func(ctx context.Context, c pb.Consistency) (err error) {
		stats, err = u.client.GetStats(ctx, &pb.GetStatsRequest{Consistency: c})
		return err
	})
	read("config", func(ctx context.Context, c pb.Consistency) (err error) {
		config, err = u.client.GetConfig(ctx, &pb.GetConfigRequest{Consistency: c})
		return err
	})
	read("nodes", func(ctx context.Context, c pb.Consistency) (err error) {
		nodes, err = u.client.ListNodes(ctx, &pb.ListNodesRequest{Consistency: c})
		return err
	})
	read("history", func(ctx context.Context, c pb.Consistency) error {
		events = nil
		req := &pb.HistoryRequest{Consistency: c, PageSize: 10000}
		for range historyPages {
			resp, err := u.client.History(ctx, req)
			if err != nil {
				return err
			}
			events = append(events, resp.GetEvents()...)
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		return nil
	})
	if query != "" {
		if hash, lookupErr = parseHash(query); lookupErr == nil {
			read("lookup", func(ctx context.Context, c pb.Consistency) (err error) {
				blob, err = u.client.GetStatus(ctx, &pb.GetStatusRequest{Hash: hash, Consistency: c})
				lookupErr = err
				return err
			})
		}
	}
	wg.Wait()

	if members != nil {
		membersView(v, members)
	}
	if stats != nil {
		statsView(v, stats)
	}
	if config != nil {
		configView(v, config)
	}
	if nodes != nil {
		nodesView(v, nodes, now)
	}
	historyView(v, events, u.cfg.CycleInterval, now)
	switch {
	case blob != nil:
		ages := map[string]string{}
		for _, n := range v.Nodes {
			ages[n.ID] = n.LastReport
		}
		v.Lookup = lookupOf(blob, ages, stats.GetClusterTimeNs())
	case lookupErr != nil:
		v.Lookup = &lookupView{Error: status.Convert(lookupErr).Message()}
	}
	return v
}

func withTimeout(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return f(ctx)
}

// parseHash reads a blob hash as 64 hex characters or 32 bytes in base64.
func parseHash(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, status.Errorf(codes.InvalidArgument, "%q is not a blob hash: want 64 hex characters (or 32 bytes in base64)", s)
}
