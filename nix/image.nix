# OCI images of the server, as uncompressed docker-archive tarballs that
# `kind load image-archive` and `docker load` accept as they are.
#
# image:     production. The runtime virtualenv only: no shell, no package
#            manager, non-root (65532, with passwd/group entries), fixed
#            creation date so the same inputs give the same image digest.
# image-dev: for Tilt. Adds busybox (Tilt's live_update copies files with `tar`
#            through `kubectl exec`), a writable copy of python/ that live_update
#            syncs into, and nix/dev-reloader.py, which restarts the server when
#            those files change.
{
  pkgs,
  lib,
  runtimeEnv,
  version,
  root,
}:
let
  uid = "65532";

  commonConfig = {
    User = "${uid}:${uid}";
    WorkingDir = "/";
    ExposedPorts = {
      "8443/tcp" = { };
      "8444/tcp" = { };
      "8080/tcp" = { };
    };
    Labels = {
      "org.opencontainers.image.title" = "scalekeeper";
      "org.opencontainers.image.version" = version;
      "org.opencontainers.image.licenses" = "Apache-2.0";
    };
  };

  commonEnv = [
    "PATH=/bin"
    "PYTHONDONTWRITEBYTECODE=1"
    "PYTHONUNBUFFERED=1"
    # grpc/aiohttp/kubernetes verify TLS peers; the apiserver CA comes from
    # the service-account mount, everything else from this bundle.
    "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
  ];

  # /etc/passwd, /etc/group and /etc/nsswitch.conf that name the server's
  # uid/gid, so tools that look the user up (getpwuid: whoami, ssh, ...) work.
  fakeNss = pkgs.dockerTools.fakeNss.override {
    extraPasswdLines = [ "nonroot:x:${uid}:${uid}:nonroot:/nonexistent:/sbin/nologin" ];
    extraGroupLines = [ "nonroot:x:${uid}:" ];
  };

  # /tmp exists (and is sticky) even when no emptyDir is mounted on it.
  tmpDir = ''
    mkdir -p tmp
    chmod 1777 tmp
  '';
in
{
  image = pkgs.dockerTools.buildLayeredImage {
    name = "scalekeeper";
    # null: the tag is the Nix output hash, so a changed image gets a new tag
    # and `helm upgrade` rolls the pods (a reused tag would not).
    tag = null;
    created = "1970-01-01T00:00:01Z";
    compressor = "none";
    # Links the venv's bin/ (scalekeeper, python) into /bin.
    contents = [
      runtimeEnv
      fakeNss
    ];
    extraCommands = tmpDir;
    config = commonConfig // {
      Entrypoint = [ "/bin/scalekeeper" ];
      Env = commonEnv;
    };
  };

  image-dev = pkgs.dockerTools.buildLayeredImage {
    name = "scalekeeper-dev";
    tag = null; # Tilt retags it to its own $EXPECTED_REF
    created = "1970-01-01T00:00:01Z";
    compressor = "none";
    contents = [
      runtimeEnv
      fakeNss
      pkgs.busybox
    ];
    extraCommands = tmpDir + ''
      mkdir -p app
      cp -r ${root + "/python"} app/python
      cp ${root + "/nix/dev-reloader.py"} app/dev-reloader.py
      chmod -R u+w app
    '';
    # live_update writes into /app/python as the (non-root) server user.
    fakeRootCommands = ''
      chown -R ${uid}:${uid} app
    '';
    config = commonConfig // {
      Entrypoint = [
        "/bin/python"
        "/app/dev-reloader.py"
        "--watch"
        "/app/python"
        "--"
        "/bin/python"
        "-m"
        "scalekeeper"
      ];
      # Synced sources shadow the copy installed in the virtualenv.
      Env = commonEnv ++ [ "PYTHONPATH=/app/python" ];
    };
  };
}
