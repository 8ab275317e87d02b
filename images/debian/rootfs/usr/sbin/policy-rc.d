#!/bin/sh
# baseinit's base image: packages must not start their daemons when they are
# installed (`apt-get install nginx` would otherwise try to, during `docker
# build`). In a container, services are started by baseinit from
# /etc/service. See invoke-rc.d(8): exit status 101 means "action forbidden".
exit 101
