#!/bin/sh
echo "serving $service on port $port"
