from crawler.start import main

main()
